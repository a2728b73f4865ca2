"""Everything on one machine: `syncer dev` (dev.py) and `syncer sandbox` (sandbox.py)."""
