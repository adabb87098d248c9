"""Loaded by the Python that runs moto's server when this folder is on PYTHONPATH.

moto keeps every model instance it ever made, for its dashboard, and its
TransactWriteItems deep-copies each table it touches, to roll back: so every
transaction kept a copy of every item of the table, and a long run under faults
(thousands of keyed events) grew the emulator by gigabytes. DynamoDB's models are
left out of that record; the others, such as SES's sent emails that tests read
from the dashboard, stay in it.
"""

import moto.core.common_models as _models

_tracked_new = _models.BaseModel.__new__


def _new(cls, *args, **kwargs):
    if cls.__module__.startswith("moto.dynamodb"):
        return object.__new__(cls)
    return _tracked_new(cls, *args, **kwargs)


_models.BaseModel.__new__ = _new
