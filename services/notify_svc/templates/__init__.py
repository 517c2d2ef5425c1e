"""Message templates: per dealer group (optionally per store), key, channel and locale, with typed variables.

The dispatcher calls :func:`resolve_template` and :func:`render` (``rendering``); the store consumer calls
:func:`ensure_default_templates` (``seeding``) for a new group; the API lives in ``router``.
"""

from notify_svc.templates.rendering import (OPT_OUT_MARKERS, Rendered, TemplateVariableError, render,
                                            resolve_template)
from notify_svc.templates.seeding import ensure_default_templates

__all__ = ["OPT_OUT_MARKERS", "Rendered", "TemplateVariableError", "ensure_default_templates", "render",
           "resolve_template"]
