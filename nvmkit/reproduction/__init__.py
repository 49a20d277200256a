"""reproduction"""
