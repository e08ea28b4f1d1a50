"""msgr_bridge.observability"""
