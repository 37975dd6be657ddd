//! What the document says of each field, made exact by one rule per direction instead of an
//! annotation per field.
//!
//! utoipa describes an `Option<T>` field as optional and nullable, which is right for what
//! the service reads (serde takes an absent `Option` as `None`, and `null` too) but not for
//! what it writes: serde sends every field of an answer, `null` included, unless the field is
//! `#[serde(skip_serializing_if = ..)]`. So in every schema no request uses (those of answers,
//! named or written inline), a property that may be `null` and is not listed as required
//! becomes required: it is always sent. A field
//! that is really left out carries `skip_serializing_if` and `#[schema(nullable = false)]`
//! (it is never `null` on the wire), and stays optional.
//!
//! Requests keep utoipa's reading, with one convention the field itself states: a merge-patch
//! field read with `patch::non_null` (absent = unchanged, `null` refused) carries
//! `#[schema(nullable = false)]`. Tests check both directions against the running service:
//! every answer against the document, and `null` and absence of every request field.
//!
//! A schema used both by requests and by answers could not be exact both ways; there is none,
//! and [`shared_object_schemas`] lets a test keep it so.

use std::collections::{BTreeMap, BTreeSet};

use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{AdditionalProperties, ArrayItems, Object, Schema, SchemaType, Type};
use utoipa::openapi::{OpenApi as Document, RefOr};

/// Makes every nullable property of the schemas answers use required (see the module): the
/// component schemas no request uses, and the schemas written inline in answers.
pub fn require_what_answers_always_send(doc: &mut Document) {
    let requested = reachable(doc, Direction::Requests);
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    // What may be null is decided on the schemas as utoipa made them.
    let lookup = components.schemas.clone();
    for (name, schema) in components.schemas.iter_mut() {
        if !requested.contains(name) {
            visit_objects(schema, &mut |object| require_nullable(object, &lookup));
        }
    }
    for operation in operations(doc) {
        for response in operation.responses.responses.values_mut() {
            let RefOr::T(response) = response else {
                continue;
            };
            for content in response.content.values_mut() {
                if let RefOr::T(content) = content
                    && let Some(schema) = content.schema.as_mut()
                {
                    visit_objects(schema, &mut |object| require_nullable(object, &lookup));
                }
            }
        }
    }
}

/// Names of component schemas with properties that both requests and answers use.
pub fn shared_object_schemas(doc: &Document) -> Vec<String> {
    let requests = reachable(doc, Direction::Requests);
    let answers = reachable(doc, Direction::Answers);
    let Some(components) = doc.components.as_ref() else {
        return Vec::new();
    };
    requests
        .intersection(&answers)
        .filter(|name| {
            let mut schema = components.schemas[*name].clone();
            let mut has_properties = false;
            visit_objects(&mut schema, &mut |object| {
                has_properties |= !object.properties.is_empty();
            });
            has_properties
        })
        .cloned()
        .collect()
}

fn require_nullable(object: &mut Object, schemas: &BTreeMap<String, RefOr<Schema>>) {
    let missing: Vec<String> = object
        .properties
        .iter()
        .filter(|(name, schema)| !object.required.contains(name) && admits_null(schema, schemas, 0))
        .map(|(name, _)| name.clone())
        .collect();
    if missing.is_empty() {
        return;
    }
    object.required.extend(missing);
    // In the order of the properties, as a reader expects.
    let order: Vec<String> = object.properties.keys().cloned().collect();
    object
        .required
        .sort_by_key(|name| order.iter().position(|p| p == name));
}

/// Whether `null` is a valid value of the schema (as utoipa renders `Option`: a type list
/// with `null`, or `oneOf` with a `null` member).
fn admits_null(
    schema: &RefOr<Schema>,
    schemas: &BTreeMap<String, RefOr<Schema>>,
    depth: usize,
) -> bool {
    let has_null = |t: &SchemaType| match t {
        SchemaType::Type(t) => *t == Type::Null,
        SchemaType::Array(types) => types.contains(&Type::Null),
        SchemaType::AnyValue => false,
    };
    match schema {
        RefOr::Ref(reference) => {
            let name = reference
                .ref_location
                .rsplit('/')
                .next()
                .unwrap_or_default();
            // A schema that refers to itself through `oneOf` or `allOf` ends the search.
            depth < 8
                && schemas
                    .get(name)
                    .is_some_and(|target| admits_null(target, schemas, depth + 1))
        }
        RefOr::T(Schema::Object(object)) => {
            has_null(&object.schema_type)
                || (matches!(object.schema_type, SchemaType::AnyValue)
                    && object.properties.is_empty()
                    && object.enum_values.is_none())
        }
        RefOr::T(Schema::Array(array)) => has_null(&array.schema_type),
        RefOr::T(Schema::OneOf(one)) => {
            has_null(&one.schema_type)
                || one
                    .items
                    .iter()
                    .any(|item| admits_null(item, schemas, depth + 1))
        }
        RefOr::T(Schema::AnyOf(any)) => {
            has_null(&any.schema_type)
                || any
                    .items
                    .iter()
                    .any(|item| admits_null(item, schemas, depth + 1))
        }
        RefOr::T(Schema::AllOf(all)) => {
            !all.items.is_empty()
                && all
                    .items
                    .iter()
                    .all(|item| admits_null(item, schemas, depth + 1))
        }
        RefOr::T(_) => false,
    }
}

/// Calls `f` on every object schema within `schema` (not following references).
fn visit_objects(schema: &mut RefOr<Schema>, f: &mut impl FnMut(&mut Object)) {
    let RefOr::T(schema) = schema else {
        return;
    };
    match schema {
        Schema::Object(object) => {
            f(object);
            for property in object.properties.values_mut() {
                visit_objects(property, f);
            }
            if let Some(additional) = object.additional_properties.as_deref_mut()
                && let AdditionalProperties::RefOr(schema) = additional
            {
                visit_objects(schema, f);
            }
        }
        Schema::Array(array) => {
            if let ArrayItems::RefOrSchema(items) = &mut array.items {
                visit_objects(items, f);
            }
        }
        Schema::OneOf(one) => one.items.iter_mut().for_each(|item| visit_objects(item, f)),
        Schema::AnyOf(any) => any.items.iter_mut().for_each(|item| visit_objects(item, f)),
        Schema::AllOf(all) => all.items.iter_mut().for_each(|item| visit_objects(item, f)),
        _ => {}
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Requests,
    Answers,
}

/// The component schemas that requests (bodies and parameters) or answers use, directly or
/// through other schemas.
fn reachable(doc: &Document, direction: Direction) -> BTreeSet<String> {
    let mut roots = Vec::new();
    for item in doc.paths.paths.values() {
        for operation in [&item.get, &item.post, &item.put, &item.patch, &item.delete]
            .into_iter()
            .flatten()
        {
            match direction {
                Direction::Requests => {
                    if let Some(RefOr::T(body)) = &operation.request_body {
                        roots.extend(body.content.values().filter_map(content_schema));
                    }
                    for parameter in operation.parameters.iter().flatten() {
                        if let RefOr::T(parameter) = parameter
                            && let Some(schema) = &parameter.schema
                        {
                            roots.push(schema.clone());
                        }
                    }
                }
                Direction::Answers => {
                    for response in operation.responses.responses.values() {
                        if let RefOr::T(response) = response {
                            roots.extend(response.content.values().filter_map(content_schema));
                        }
                    }
                }
            }
        }
    }
    let schemas = doc
        .components
        .as_ref()
        .map(|c| c.schemas.clone())
        .unwrap_or_default();
    let mut seen = BTreeSet::new();
    while let Some(schema) = roots.pop() {
        let mut names = Vec::new();
        collect_refs(&schema, &mut names);
        for name in names {
            if let Some(target) = schemas.get(&name)
                && seen.insert(name)
            {
                roots.push(target.clone());
            }
        }
    }
    seen
}

fn content_schema(content: &RefOr<utoipa::openapi::Content>) -> Option<RefOr<Schema>> {
    match content {
        RefOr::T(content) => content.schema.clone(),
        RefOr::Ref(_) => None,
    }
}

/// Names of the component schemas `schema` refers to.
fn collect_refs(schema: &RefOr<Schema>, names: &mut Vec<String>) {
    let name_of = |reference: &utoipa::openapi::Ref| {
        reference
            .ref_location
            .strip_prefix("#/components/schemas/")
            .map(str::to_owned)
    };
    match schema {
        RefOr::Ref(reference) => names.extend(name_of(reference)),
        RefOr::T(Schema::Object(object)) => {
            for property in object.properties.values() {
                collect_refs(property, names);
            }
            if let Some(AdditionalProperties::RefOr(schema)) =
                object.additional_properties.as_deref()
            {
                collect_refs(schema, names);
            }
        }
        RefOr::T(Schema::Array(array)) => {
            if let ArrayItems::RefOrSchema(items) = &array.items {
                collect_refs(items, names);
            }
        }
        RefOr::T(Schema::OneOf(one)) => one.items.iter().for_each(|i| collect_refs(i, names)),
        RefOr::T(Schema::AnyOf(any)) => any.items.iter().for_each(|i| collect_refs(i, names)),
        RefOr::T(Schema::AllOf(all)) => all.items.iter().for_each(|i| collect_refs(i, names)),
        RefOr::T(_) => {}
    }
}

/// Every operation of the document.
pub(super) fn operations(doc: &mut Document) -> impl Iterator<Item = &mut Operation> {
    doc.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
    })
}
