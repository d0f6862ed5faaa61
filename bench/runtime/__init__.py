"""Side-by-side benchmark of the Modelplane runtime against Python serving peers (issue 5)."""
