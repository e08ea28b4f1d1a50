"""msgr_bridge.sync"""
