"""What every function runs on: settings, Powertools observability, the engines' clients, work after the
response, and the deploy-time migration resource."""
