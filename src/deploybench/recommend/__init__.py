"""The recommendation: judged trials (records.py), statistical ties and their rules (ties.py), the
eager baseline's comparison (baseline.py), and the ranking under the user's constraints (rank.py).
"""
