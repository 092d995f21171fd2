"""Ingest checkpoints keep a fingerprint of the file's first bytes, so a file truncated in place and refilled
past the old offset (copytruncate) is told from the file read before.

Existing checkpoints get none (NULL): the source trusts them by the old size rule once, then saves one.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ingest_checkpoints") as batch:
        batch.add_column(sa.Column("fingerprint", sa.String(64)))
        batch.add_column(sa.Column("fingerprint_size", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("ingest_checkpoints") as batch:
        batch.drop_column("fingerprint_size")
        batch.drop_column("fingerprint")
