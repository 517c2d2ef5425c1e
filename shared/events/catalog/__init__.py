"""The event catalog: one module per producing service. Importing this package registers every type."""

from shared.events.catalog import customer  # noqa: F401
from shared.events.catalog import followup  # noqa: F401
from shared.events.catalog import notify  # noqa: F401
from shared.events.catalog import survey  # noqa: F401
