"""rotator: give every row of a large, live table a fresh secret, resumably."""
