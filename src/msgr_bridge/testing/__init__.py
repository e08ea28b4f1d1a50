"""msgr_bridge.testing"""
