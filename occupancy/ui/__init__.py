"""What a person watches while the engine runs: the Textual dashboard and the headless lines."""
