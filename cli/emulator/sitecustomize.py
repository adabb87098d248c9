"""Loaded by the Python that runs moto's server: `hookline dev` and the tests
start it with this file's folder on PYTHONPATH.

Two habits of moto make a long run with idempotency keys (each event a
TransactWriteItems) slow down and grow without end:

- its TransactWriteItems deep-copies every table it touches, to roll back on
  failure: a copy of the whole table per transaction, so each takes longer as
  the table grows;
- it keeps every model instance it ever made, for its dashboard, so each of
  those copies was kept too (gigabytes after a few thousand events).

Here a transaction copies the items it writes alone and puts them back if it
fails, which is all the table-wide copy was for; and DynamoDB's models are left
out of the dashboard's record (the others, such as SES's sent emails that tests
read from the dashboard, stay in it). With a moto whose internals differ from
the pinned one's, nothing is changed.
"""

import copy
import sys

try:
    import moto.core.common_models as _models
    import moto.dynamodb.models as _dynamodb
    from moto.dynamodb.models.dynamo_type import DynamoType as _DynamoType
    from moto.dynamodb.models.table import Table as _Table

    _tracked_new = _models.BaseModel.__new__
    _transact = _dynamodb.DynamoDBBackend.transact_write_items
    if _dynamodb.copy is not copy:
        raise ImportError("moto.dynamodb.models has no `copy` module of its own")
except (ImportError, AttributeError) as error:
    print(
        f"hookline: moto's internals are not the pinned version's ({error!r}), so it is "
        "left as it is: long runs with idempotency keys will slow down and grow",
        file=sys.stderr,
    )
else:

    def _new(cls, *args, **kwargs):
        if cls.__module__.startswith("moto.dynamodb"):
            return object.__new__(cls)
        return _tracked_new(cls, *args, **kwargs)

    class _TablesNotCopied:
        """The `copy` module as the DynamoDB backend sees it. The one table it
        deep-copies is a transaction's backup: that "copy" is the table itself,
        and putting it back a no-op, since the items are put back below."""

        @staticmethod
        def deepcopy(value, memo=None):
            return value if isinstance(value, _Table) else copy.deepcopy(value, memo)

    def _written(backend, transact_items):
        """(table, hash key, range key, a copy of the item) for every item the
        transaction writes, as it is before."""
        written = []
        for entry in transact_items:
            try:
                ((kind, operation),) = entry.items()
                table = backend.tables.get(operation.get("TableName"))
                if table is None or kind == "ConditionCheck":
                    continue
                key = operation["Item"] if kind == "Put" else operation["Key"]
                hash_key = _DynamoType(key[table.hash_key_attr])
                range_key = (
                    _DynamoType(key[table.range_key_attr]) if table.has_range_key else None
                )
            except (KeyError, TypeError, ValueError, AttributeError):
                continue  # moto cannot key it either, so refuses it and writes nothing
            item = copy.deepcopy(table.get_item(hash_key, range_key))
            written.append((table, hash_key, range_key, item))
        return written

    def _put_back(table, hash_key, range_key, item):
        table.delete_item(hash_key, range_key)
        if item is not None and range_key is None:
            table.items[hash_key] = item
        elif item is not None:
            table.items[hash_key][range_key] = item

    def _transact_write_items(self, transact_items):
        before = _written(self, transact_items)
        try:
            return _transact(self, transact_items)
        except Exception:
            for table, hash_key, range_key, item in reversed(before):
                _put_back(table, hash_key, range_key, item)
            raise

    _models.BaseModel.__new__ = _new
    _dynamodb.copy = _TablesNotCopied
    _dynamodb.DynamoDBBackend.transact_write_items = _transact_write_items
