"""What a person runs: the prediction CLI, the upload demo, the report and the notebook runner."""
