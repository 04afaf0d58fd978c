"""telemetry_bus"""
