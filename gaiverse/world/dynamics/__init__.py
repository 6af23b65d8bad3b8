"""Dynamic elements of a world (ENV-d2): routes, traffic, pedestrians, weather, schedules, checks and glTF export."""
