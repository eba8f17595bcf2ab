"""gem3d MONAI Label app: serves the bundle in ../../bundle (configs and weights are loaded, never copied)."""
