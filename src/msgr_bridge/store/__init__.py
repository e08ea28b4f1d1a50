"""msgr_bridge.store"""
