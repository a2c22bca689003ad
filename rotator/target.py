"""Resolve ``app_label.Model.field`` to a model field that can be rotated.

Refused up front, with the reason: fields that are not a column of the
model's own table (reverse relations, many-to-many, a multi-table-inheritance
parent's field), references (ForeignKey, OneToOneField), the primary key,
arrays, and a column that another table's ForeignKey points to (``to_field``).

Rows are always read from the raw table, never through a model manager: after
a leak every row's secret must change, including rows that a filtering
``Meta.base_manager_name`` hides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist
from django.db import DEFAULT_DB_ALIAS, models

from rotator.errors import RotatorError


def column_of(field: models.Field) -> str:
    """``field``'s column name; django-stubs types it ``str | None`` (None: no column)."""
    column = field.column
    if not isinstance(column, str):
        # resolve_target() refuses fields without a column of the model's own table.
        raise AssertionError(f"unreachable: {field!r} has no column")
    return column


@dataclass(frozen=True)
class Target:
    model: type[models.Model]
    field: models.Field
    alias: str

    @property
    def label(self) -> str:
        return f"{self.model._meta.label}.{self.field.name}"

    @property
    def model_label(self) -> str:
        return self.model._meta.label

    @property
    def pk(self) -> models.Field:
        return self.model._meta.pk

    @property
    def column(self) -> str:
        """The rotated column's name in the database."""
        return column_of(self.field)

    @property
    def run_column(self) -> str:
        """What the run store keys this target's runs on, with the table (Run.column)."""
        return self.column

    @property
    def unique(self) -> bool:
        """Whether some unique constraint covers the column (new values can then collide)."""
        return is_unique(self.model, self.field)

    def queryset(self) -> models.QuerySet:
        """Every row of the table: no manager, so no ``base_manager_name`` filter."""
        return models.QuerySet(model=self.model, using=self.alias)

    def null_rows(self) -> int:
        """How many rows hold NULL in the column (they stay NULL unless --fill-nulls)."""
        if not self.field.null:
            return 0
        return self.queryset().filter(**{f"{self.field.name}__isnull": True}).count()

    def key_from_text(self, text: str | None) -> Any:
        return None if text is None else self.pk.to_python(text)


def revoke_command(model: type[models.Model], alias: str) -> str:
    """The revoke_rows command line for ``model`` (without --leaked)."""
    database = "" if alias == DEFAULT_DB_ALIAS else f" --database {alias}"
    return f"python manage.py revoke_rows {model._meta.label}{database}"


def resolve_target(label: str, alias: str, key: bool = False) -> Target:
    """The rotation target ``label``; ``key``: the primary key is accepted (for the flags
    that only read, --leaked and --status)."""
    parts = label.split(".")
    if len(parts) != 3 or not all(parts):
        raise RotatorError(f"{label!r} is not a model field; expected app_label.Model.field")
    app_label, model_name, field_name = parts
    try:
        model = apps.get_model(app_label, model_name)
    except LookupError:
        raise RotatorError(
            f"{app_label}.{model_name!s} is not an installed model; "
            f"expected app_label.Model.field, got {label!r}"
        ) from None
    try:
        field = model._meta.get_field(field_name)
    except FieldDoesNotExist:
        raise RotatorError(
            f"{model._meta.label} has no field {field_name!r}; expected app_label.Model.field"
        ) from None
    if field.primary_key and not key:
        command = revoke_command(model, alias)
        raise RotatorError(
            f"{label!r} is the primary key, which cannot be rotated in place; where the key is "
            f"the secret (a token, a session key), revoke the rows instead: {command} "
            f"--leaked FILE (or every row: {command})"
        )
    _check_column(label, model, field)
    pk = model._meta.pk
    if (
        pk is None
        or len(getattr(pk, "fields", [pk])) != 1
        or pk.get_internal_type() == ("CompositePrimaryKey")
    ):
        raise RotatorError(f"{model._meta.label} has no single-column primary key to shard on")
    return Target(model=model, field=field, alias=alias)


def _check_column(label: str, model: type[models.Model], field: Any) -> None:
    if field.is_relation and getattr(field, "concrete", False) and not field.many_to_many:
        other = field.related_model._meta.label
        raise RotatorError(
            f"{label!r} is a {type(field).__name__} (a reference to {other}), not a secret; "
            "rotate a column that holds a secret"
        )
    if not getattr(field, "concrete", False) or field.many_to_many:
        raise RotatorError(
            f"{label!r} is not a column of {model._meta.label}'s table; "
            "only concrete fields can rotate"
        )
    if field.model._meta.concrete_model is not model._meta.concrete_model:
        parent = f"{field.model._meta.label}.{field.name}"
        raise RotatorError(
            f"{label!r} lives on the parent table {field.model._meta.db_table!r}; "
            f"rotate {parent!r} instead (it covers every {model._meta.label} row)"
        )
    if _is_array(field):
        raise RotatorError(
            f"{label!r} is an {type(field).__name__}; rotator rotates one value per row, not arrays"
        )
    referenced = None if field.primary_key else _referenced_by(field)
    if referenced:
        raise RotatorError(
            f"{label!r} is referenced by {referenced} (to_field={field.name!r}); new values "
            "would break those references: rotate a column no ForeignKey points to"
        )


def _is_array(field: models.Field) -> bool:
    try:
        from django.contrib.postgres.fields import ArrayField
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return isinstance(field, ArrayField)


def _referenced_by(field: models.Field) -> str | None:
    """The first ForeignKey of any installed model that points at this column."""
    table, column = field.model._meta.db_table, field.column
    for model in apps.get_models(include_auto_created=True):
        for f in model._meta.local_fields:
            if not (f.is_relation and f.concrete and f.remote_field):
                continue
            for target_field in getattr(f, "foreign_related_fields", ()):
                if target_field.model._meta.db_table == table and target_field.column == column:
                    return f"{model._meta.label}.{f.name}"
    return None


def is_unique(model: type[models.Model], field: models.Field) -> bool:
    """True if ``unique=True``, ``unique_together`` or any ``UniqueConstraint`` covers it."""
    if field.unique:
        return True
    concrete = model._meta.concrete_model
    if concrete is None:
        raise AssertionError("unreachable: a model always has a concrete model")
    meta = concrete._meta
    names = {field.name, field.attname}
    if any(names & set(together) for together in meta.unique_together):
        return True
    for constraint in meta.constraints:
        if not isinstance(constraint, models.UniqueConstraint):
            continue
        if names & set(constraint.fields):
            return True
        for expression in constraint.expressions:
            refs: list[Any] = list(getattr(expression, "flatten", lambda: [])())
            if any(isinstance(e, models.F) and getattr(e, "name", None) in names for e in refs):
                return True
    return False


#: Run.column of a revocation: no real column has this name, so a revocation and a
#: rotation of the same table never clash (one unfinished run per table and column).
REVOKE_COLUMN = "<revoke_rows>"


@dataclass(frozen=True)
class RevokeTarget(Target):
    """The rows of a model to revoke (delete), matched on ``field`` (default: the key)."""

    @property
    def label(self) -> str:
        return self.model._meta.label

    @property
    def run_column(self) -> str:
        return REVOKE_COLUMN


def resolve_revocation(label: str, alias: str, field_name: str | None = None) -> RevokeTarget:
    """The model ``app_label.Model`` whose rows revoke_rows deletes, refused up front when
    a plain DELETE would not do what Django's delete() does (see ``deletion_refusal``)."""
    parts = label.split(".")
    if len(parts) != 2 or not all(parts):
        raise RotatorError(f"{label!r} is not a model; expected app_label.Model")
    try:
        model = apps.get_model(parts[0], parts[1])
    except LookupError:
        raise RotatorError(
            f"{label!r} is not an installed model; expected app_label.Model"
        ) from None
    pk = model._meta.pk
    if pk is None or pk.get_internal_type() == "CompositePrimaryKey":
        raise RotatorError(f"{model._meta.label} has no single-column primary key to shard on")
    field: Any = pk
    if field_name is not None:
        try:
            field = model._meta.get_field(field_name)
        except FieldDoesNotExist:
            raise RotatorError(
                f"--field {field_name!r} is not a field of {model._meta.label}; name the "
                "column whose values the --leaked file holds"
            ) from None
        if not getattr(field, "concrete", False) or field.many_to_many or _is_array(field):
            raise RotatorError(
                f"--field {field_name!r} is not a column of {model._meta.label}'s table; "
                "name a concrete field"
            )
    refusal = deletion_refusal(model)
    if refusal:
        raise RotatorError(refusal)
    return RevokeTarget(model=model, field=field, alias=alias)


def deletion_refusal(model: type[models.Model]) -> str | None:
    """Why deleting ``model``'s rows with a plain DELETE would break Django's rules, or None.

    A batch deletes in SQL, as Django itself does when its Collector finds nothing
    to do (``Collector.can_fast_delete``): only an inbound ForeignKey with
    ``on_delete=DO_NOTHING`` is honoured (the database's own constraint, or its
    ON DELETE rule, then decides). CASCADE, SET_NULL, SET_DEFAULT, SET(), PROTECT
    and RESTRICT are Django's work, done in Python per object; so are generic
    relations, a multi-table parent row and delete signals. Those are refused.
    """
    from django.db.models import DO_NOTHING, signals
    from django.db.models.deletion import get_candidate_relations_to_delete

    label = model._meta.label
    concrete = model._meta.concrete_model
    if concrete is None:
        raise AssertionError("unreachable: a model always has a concrete model")
    meta = concrete._meta
    rels: list[Any] = list(get_candidate_relations_to_delete(meta))
    referencing = sorted(
        f"{rel.related_model._meta.label}.{rel.field.name} ({rel.on_delete.__name__})"
        for rel in rels
        if rel.on_delete is not DO_NOTHING
    )
    if referencing:
        return (
            f"{label} is referenced by {', '.join(referencing)}: a batched DELETE cannot "
            "apply on_delete rules other than DO_NOTHING; revoke the referencing rows "
            "(or change on_delete) first"
        )
    generic = [f.name for f in meta.private_fields if hasattr(f, "bulk_related_objects")]
    if generic:
        return (
            f"{label} has generic relations ({', '.join(generic)}) that Django's delete() "
            "would delete with it; a batched DELETE cannot: delete those rows first"
        )
    if meta.parents:
        parents = ", ".join(sorted(p._meta.label for p in meta.parents))
        return (
            f"{label} inherits from {parents} (multi-table inheritance): a batched DELETE "
            "of its table would leave the parent rows; delete these rows through the ORM"
        )
    heard = [s for s in ("pre_delete", "post_delete") if getattr(signals, s).has_listeners(model)]
    if heard:
        return (
            f"{label} has {' and '.join(heard)} receivers, which a batched DELETE would not "
            "call; disconnect them or delete those rows through the ORM"
        )
    return None
