"""Example training configs (YAML), shipped with the package."""
