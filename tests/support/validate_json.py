"""Validates JSON documents twtune wrote against the JSON Schemas in docs/schema.

Usage: validate_json.py SCHEMA_DIR NAME FILE [NAME FILE ...]

NAME is a schema's file name without `.json` (`audit`, `explain`, ...). Every schema in SCHEMA_DIR is
registered under its `$id`, so that one may refer to another (the --all-netns report holds audit
reports). Prints each error with the path to the value and exits 1 when any document is invalid.
"""

import json
import pathlib
import sys

import jsonschema
import referencing


def main(argv):
    schema_dir, pairs = pathlib.Path(argv[1]), argv[2:]
    if not pairs or len(pairs) % 2:
        sys.exit("usage: validate_json.py SCHEMA_DIR NAME FILE [NAME FILE ...]")
    schemas = {p.stem: json.loads(p.read_text()) for p in sorted(schema_dir.glob("*.json"))}
    registry = referencing.Registry().with_resources(
        (s["$id"], referencing.Resource.from_contents(s)) for s in schemas.values()
    )
    failed = False
    for name, path in zip(pairs[::2], pairs[1::2]):
        schema = schemas[name]
        jsonschema.Draft202012Validator.check_schema(schema)
        validator = jsonschema.Draft202012Validator(schema, registry=registry)
        document = json.loads(pathlib.Path(path).read_text())
        for error in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path)):
            failed = True
            where = "/".join(str(p) for p in error.absolute_path) or "(top)"
            print(f"{path}: {name}: at {where}: {error.message}"[:2000])
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main(sys.argv)
