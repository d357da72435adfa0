"""The HEPS spawner API of the facility's design, path for path, on beamhub's services."""
