"""Karl's NG router: places calls on media nodes (arrives in a later issue)."""
