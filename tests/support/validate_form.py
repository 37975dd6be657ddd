"""Validates registration bodies against a form's JSON Schema with the reference Python
implementation, as an independent frontend would. Reads {"schema": …, "bodies": […]} from
standard input and prints a JSON list: for each body, whether it is valid."""

import json
import sys

from jsonschema import Draft202012Validator

request = json.load(sys.stdin)
Draft202012Validator.check_schema(request["schema"])
validator = Draft202012Validator(request["schema"])
json.dump([validator.is_valid(body) for body in request["bodies"]], sys.stdout)
