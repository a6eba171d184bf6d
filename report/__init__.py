"""HTML reports rendered from the aggregated leaderboard; self-contained (inline CSS and SVG, no scripts)."""
