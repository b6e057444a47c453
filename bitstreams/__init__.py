"""Package data: see qdev.assets (this folder ships in the wheel as qdev.bitstreams)."""
