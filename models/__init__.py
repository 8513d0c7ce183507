"""Pure PyTorch + Lightning (+ numpy / OpenCV) models: no prefect, mlflow or dvc, no params.yaml.

Runs on a bare GPU box. Constructors take explicit arguments.
"""
