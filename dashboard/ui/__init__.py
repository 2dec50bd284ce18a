"""The Textual dashboard: the only package of natslab that imports Textual."""
