"""Platform adapters: translate platform events to core requests and back."""
