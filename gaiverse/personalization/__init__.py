"""Personalization (FGMV-22 clause 8.4, PER-a1..PER-e2): interaction store, task repository, preference
analysis, recommendation and quest generation, as plain Python/torch (no Prefect, no Ray).

``Personalizer`` (personalizer.py) joins the stages into the service flow; flows, Ray actors and API
endpoints wrap it. ``evaluate.evaluate_recommend`` is `gaiverse eval recommend`.
"""
