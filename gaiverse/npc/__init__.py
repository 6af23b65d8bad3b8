"""NPC core of FGMV-22 clause 8.3 (NPC-a1..d2): knowledge base, understanding, grounded dialogue, expression.

Plain Python (no Prefect, no Ray): flows, actors and API endpoints wrap these modules.

- ``knowledge_base``: DuckDB store of passages with embeddings, hybrid retrieval, owner scoping (NPC-a1, NPC-a2)
- ``prior``: the prior knowledge built from the shipped SRD and GeoNames sources (NPC-a1)
- ``chunking``: user documents (text, Markdown, JSON, CSV) -> passages (NPC-a2)
- ``understanding``: intents and entities from text and HCI signals, dialogue state, memory (NPC-c1, NPC-c2)
- ``dialogue``: grounded answer generation, refusal, streaming (NPC-c2, NPC-d1)
- ``expression``: emotion -> blendshapes, gestures, visemes (NPC-c2, NPC-d1)
- ``generation``: settings + character template -> profile, backstory, voice, behaviour, .glb (NPC-b1, NPC-b2);
  ``character_repository`` (SRD + user templates), ``appearance`` (body parameters), ``behaviour`` (schedule)
- ``evaluate``: ``gaiverse eval npc`` (EVAL.md)
"""
