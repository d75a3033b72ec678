"""Thin trigger adapters. Each module holds one blueprint: parse the trigger, call one service in
``shared/``, return. Heavy imports happen inside the handlers (cold start)."""
