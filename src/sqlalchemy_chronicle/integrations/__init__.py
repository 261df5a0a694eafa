"""Optional integrations (command line, frameworks, migrations).

Nothing in the core imports this package; each module here is imported only by the
user (or by ``python -m sqlalchemy_chronicle``).
"""
