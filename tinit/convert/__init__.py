"""Conversions between tinit's services.yaml and other tools' configs, one module per format."""
