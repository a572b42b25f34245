"""Classroom: classes, nicknames, recorded predictions, replica counters (SQLAlchemy), teacher sign-in, signed links.

Nothing here imports Streamlit: the pages reach it through ui.classroom.
"""
