"""World generation for FGMV-22 clauses 7.2 / 8.2 (dynamic environment generation).

Layout core (ENV-a1, ENV-a2): `dem` and `osm` read real terrain and road data, `tiles` turns
them into normalised training tiles with provenance, `layout_model` trains and samples the
diffusion models, `stitch` and `layout` build seamless worlds from tiles, `suggestions` parses
the user's words into controls, `terrain_metrics` / `road_metrics` / `evaluate` measure realism.
Procedural elements and output (ENV-d1): `road_graph` / `road_cleaning` turn road rasters into a
connected road graph, `road_mesh` grades and meshes it, `terrain_mesh` and `vegetation` make the
ground and plants, `assemble` writes the world .glb (`glb`), PNGs and manifest, `world_checks` checks it.
Plain Python + torch: no Prefect or Ray imports here.
"""
