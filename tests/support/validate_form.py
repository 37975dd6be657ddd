"""Validates registration bodies against a form's JSON Schema with the reference Python
implementation, as an independent frontend would, formats included (a frontend should check
them: `date` refuses 2027-02-31). Reads {"schema": …, "bodies": […]} from standard input and
prints, for each body, the JSON pointers of the members it finds wrong, sorted (none: valid).
A missing or unexpected member is pointed at by its own pointer (`/answers/town`), not by
its object's, as the server names it."""

import json
import sys

from jsonschema import Draft202012Validator


def pointer(path):
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def wrong_members(schema, body, error):
    path = list(error.absolute_path)
    if error.validator is None and error.schema is False:
        # A `false` subschema's error carries the path of the object whose `properties` it
        # is in, not the member's own (jsonschema 4.23 to 4.26): find the member by the schema.
        properties = schema
        for step in error.absolute_schema_path:
            properties = properties[step]
        container = body
        for step in path:
            container = container[step]
        return [pointer(path + [name]) for name, sub in properties.items() if sub is False and name in container]
    if error.validator == "required":
        return [pointer(path + [name]) for name in error.validator_value if name not in error.instance]
    if error.validator == "additionalProperties":
        known = error.schema.get("properties", {})
        return [pointer(path + [name]) for name in error.instance if name not in known]
    return [pointer(path)]


request = json.load(sys.stdin)
schema = request["schema"]
Draft202012Validator.check_schema(schema)
validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
json.dump(
    [
        sorted({member for error in validator.iter_errors(body) for member in wrong_members(schema, body, error)})
        for body in request["bodies"]
    ],
    sys.stdout,
)
