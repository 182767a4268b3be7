"""The Powertools Logger, Tracer and Metrics, made once and shared by every function."""

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "reverie"
NAMESPACE = "Reverie"

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
