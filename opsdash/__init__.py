"""opsdash"""
