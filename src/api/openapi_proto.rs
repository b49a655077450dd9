//! `/openapi/v2` in protobuf: the subset of gnostic's `openapi_v2.Document` message
//! (github.com/google/gnostic-models `openapiv2/OpenAPIv2.proto`) that a Swagger 2.0
//! document of this server uses, and the conversion from its JSON form. kubectl asks for
//! this encoding (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`) for
//! client-side validation (`kubectl apply -f` of a `kind: List`, kubectl ≤ 1.27), for the
//! `fieldValidation` check of kubectl 1.27 and for strategic-merge patch metadata.
//!
//! Field numbers are the .proto's. A `oneof` is written as plain optional fields: on the
//! wire a oneof member is just its field, and only one is ever set here. Vendor extensions
//! (`x-kubernetes-*`) are `NamedAny` values whose `yaml` holds the JSON text (JSON is YAML),
//! which is how kube-openapi's `VendorExtensionToMap` reads them back. Owns no HTTP.

use prost::Message;
use serde_json::{Map, Value};

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Document {
    #[prost(string, tag = "1")]
    swagger: String,
    #[prost(message, optional, tag = "2")]
    info: Option<Info>,
    #[prost(string, repeated, tag = "6")]
    consumes: Vec<String>,
    #[prost(string, repeated, tag = "7")]
    produces: Vec<String>,
    #[prost(message, optional, tag = "8")]
    paths: Option<Paths>,
    #[prost(message, optional, tag = "9")]
    definitions: Option<Definitions>,
}

#[derive(Clone, PartialEq, Message)]
struct Info {
    #[prost(string, tag = "1")]
    title: String,
    #[prost(string, tag = "2")]
    version: String,
}

#[derive(Clone, PartialEq, Message)]
struct Paths {
    #[prost(message, repeated, tag = "2")]
    path: Vec<NamedPathItem>,
}

#[derive(Clone, PartialEq, Message)]
struct NamedPathItem {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    value: Option<PathItem>,
}

#[derive(Clone, PartialEq, Message)]
struct PathItem {
    #[prost(message, optional, tag = "2")]
    get: Option<Operation>,
    #[prost(message, optional, tag = "3")]
    put: Option<Operation>,
    #[prost(message, optional, tag = "4")]
    post: Option<Operation>,
    #[prost(message, optional, tag = "5")]
    delete: Option<Operation>,
    #[prost(message, optional, tag = "8")]
    patch: Option<Operation>,
    #[prost(message, repeated, tag = "9")]
    parameters: Vec<ParametersItem>,
}

#[derive(Clone, PartialEq, Message)]
struct Operation {
    #[prost(string, repeated, tag = "1")]
    tags: Vec<String>,
    #[prost(string, tag = "3")]
    description: String,
    #[prost(string, tag = "5")]
    operation_id: String,
    #[prost(string, repeated, tag = "6")]
    produces: Vec<String>,
    #[prost(string, repeated, tag = "7")]
    consumes: Vec<String>,
    #[prost(message, repeated, tag = "8")]
    parameters: Vec<ParametersItem>,
    #[prost(message, optional, tag = "9")]
    responses: Option<Responses>,
    #[prost(string, repeated, tag = "10")]
    schemes: Vec<String>,
    #[prost(message, repeated, tag = "13")]
    vendor_extension: Vec<NamedAny>,
}

/// `oneof { Parameter parameter = 1; JsonReference json_reference = 2; }`.
#[derive(Clone, PartialEq, Message)]
struct ParametersItem {
    #[prost(message, optional, tag = "1")]
    parameter: Option<Parameter>,
}

/// `oneof { BodyParameter body_parameter = 1; NonBodyParameter non_body_parameter = 2; }`.
#[derive(Clone, PartialEq, Message)]
struct Parameter {
    #[prost(message, optional, tag = "1")]
    body_parameter: Option<BodyParameter>,
    #[prost(message, optional, tag = "2")]
    non_body_parameter: Option<NonBodyParameter>,
}

#[derive(Clone, PartialEq, Message)]
struct BodyParameter {
    #[prost(string, tag = "1")]
    description: String,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(string, tag = "3")]
    r#in: String,
    #[prost(bool, tag = "4")]
    required: bool,
    #[prost(message, optional, tag = "5")]
    schema: Option<Schema>,
}

/// `oneof { … QueryParameterSubSchema query_parameter_sub_schema = 3;
/// PathParameterSubSchema path_parameter_sub_schema = 4; }`.
#[derive(Clone, PartialEq, Message)]
struct NonBodyParameter {
    #[prost(message, optional, tag = "3")]
    query_parameter_sub_schema: Option<QueryParameterSubSchema>,
    #[prost(message, optional, tag = "4")]
    path_parameter_sub_schema: Option<PathParameterSubSchema>,
}

#[derive(Clone, PartialEq, Message)]
struct QueryParameterSubSchema {
    #[prost(bool, tag = "1")]
    required: bool,
    #[prost(string, tag = "2")]
    r#in: String,
    #[prost(string, tag = "3")]
    description: String,
    #[prost(string, tag = "4")]
    name: String,
    #[prost(string, tag = "6")]
    r#type: String,
    #[prost(bool, tag = "20")]
    unique_items: bool,
}

#[derive(Clone, PartialEq, Message)]
struct PathParameterSubSchema {
    #[prost(bool, tag = "1")]
    required: bool,
    #[prost(string, tag = "2")]
    r#in: String,
    #[prost(string, tag = "3")]
    description: String,
    #[prost(string, tag = "4")]
    name: String,
    #[prost(string, tag = "5")]
    r#type: String,
    #[prost(bool, tag = "19")]
    unique_items: bool,
}

#[derive(Clone, PartialEq, Message)]
struct Responses {
    #[prost(message, repeated, tag = "1")]
    response_code: Vec<NamedResponseValue>,
}

#[derive(Clone, PartialEq, Message)]
struct NamedResponseValue {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    value: Option<ResponseValue>,
}

/// `oneof { Response response = 1; JsonReference json_reference = 2; }`.
#[derive(Clone, PartialEq, Message)]
struct ResponseValue {
    #[prost(message, optional, tag = "1")]
    response: Option<Response>,
}

#[derive(Clone, PartialEq, Message)]
struct Response {
    #[prost(string, tag = "1")]
    description: String,
    #[prost(message, optional, tag = "2")]
    schema: Option<SchemaItem>,
}

/// `oneof { Schema schema = 1; FileSchema file_schema = 2; }`.
#[derive(Clone, PartialEq, Message)]
struct SchemaItem {
    #[prost(message, optional, tag = "1")]
    schema: Option<Schema>,
}

#[derive(Clone, PartialEq, Message)]
struct Definitions {
    #[prost(message, repeated, tag = "1")]
    additional_properties: Vec<NamedSchema>,
}

#[derive(Clone, PartialEq, Message)]
struct NamedSchema {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    value: Option<Schema>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Schema {
    #[prost(string, tag = "1")]
    r#ref: String,
    #[prost(string, tag = "2")]
    format: String,
    #[prost(string, tag = "3")]
    title: String,
    #[prost(string, tag = "4")]
    description: String,
    #[prost(message, optional, tag = "5")]
    default: Option<Any>,
    #[prost(double, tag = "6")]
    multiple_of: f64,
    #[prost(double, tag = "7")]
    maximum: f64,
    #[prost(bool, tag = "8")]
    exclusive_maximum: bool,
    #[prost(double, tag = "9")]
    minimum: f64,
    #[prost(bool, tag = "10")]
    exclusive_minimum: bool,
    #[prost(int64, tag = "11")]
    max_length: i64,
    #[prost(int64, tag = "12")]
    min_length: i64,
    #[prost(string, tag = "13")]
    pattern: String,
    #[prost(int64, tag = "14")]
    max_items: i64,
    #[prost(int64, tag = "15")]
    min_items: i64,
    #[prost(bool, tag = "16")]
    unique_items: bool,
    #[prost(int64, tag = "17")]
    max_properties: i64,
    #[prost(int64, tag = "18")]
    min_properties: i64,
    #[prost(string, repeated, tag = "19")]
    required: Vec<String>,
    #[prost(message, repeated, tag = "20")]
    r#enum: Vec<Any>,
    #[prost(message, optional, boxed, tag = "21")]
    additional_properties: Option<Box<AdditionalPropertiesItem>>,
    #[prost(message, optional, tag = "22")]
    r#type: Option<TypeItem>,
    #[prost(message, optional, tag = "23")]
    items: Option<ItemsItem>,
    #[prost(message, repeated, tag = "24")]
    all_of: Vec<Schema>,
    #[prost(message, optional, tag = "25")]
    properties: Option<Properties>,
    #[prost(bool, tag = "27")]
    read_only: bool,
    #[prost(message, repeated, tag = "31")]
    vendor_extension: Vec<NamedAny>,
}

/// `oneof { Schema schema = 1; bool boolean = 2; }`.
#[derive(Clone, PartialEq, Message)]
struct AdditionalPropertiesItem {
    #[prost(message, optional, tag = "1")]
    schema: Option<Schema>,
    #[prost(bool, optional, tag = "2")]
    boolean: Option<bool>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeItem {
    #[prost(string, repeated, tag = "1")]
    value: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
struct ItemsItem {
    #[prost(message, repeated, tag = "1")]
    schema: Vec<Schema>,
}

#[derive(Clone, PartialEq, Message)]
struct Properties {
    #[prost(message, repeated, tag = "1")]
    additional_properties: Vec<NamedSchema>,
}

#[derive(Clone, PartialEq, Message)]
struct NamedAny {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    value: Option<Any>,
}

/// `Any { google.protobuf.Any value = 1; string yaml = 2; }`: only `yaml` is used.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Any {
    #[prost(string, tag = "2")]
    yaml: String,
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn any(v: &Value) -> Any {
    Any {
        yaml: serde_json::to_string(v).unwrap_or_default(),
    }
}

/// The `x-…` keys of a JSON object as vendor extensions.
fn extensions(v: &Value) -> Vec<NamedAny> {
    v.as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with("x-"))
        .map(|(k, val)| NamedAny {
            name: k.clone(),
            value: Some(any(val)),
        })
        .collect()
}

fn named_schemas(map: Option<&Map<String, Value>>) -> Vec<NamedSchema> {
    map.into_iter()
        .flatten()
        .map(|(k, s)| NamedSchema {
            name: k.clone(),
            value: Some(schema(s)),
        })
        .collect()
}

/// A Swagger 2.0 schema object as gnostic's `Schema`.
pub(crate) fn schema(v: &Value) -> Schema {
    let int = |key: &str| v.get(key).and_then(Value::as_i64).unwrap_or_default();
    let num = |key: &str| v.get(key).and_then(Value::as_f64).unwrap_or_default();
    let flag = |key: &str| v.get(key).and_then(Value::as_bool).unwrap_or_default();
    let r#type = match v.get("type") {
        Some(Value::String(t)) => Some(TypeItem {
            value: vec![t.clone()],
        }),
        Some(Value::Array(_)) => Some(TypeItem {
            value: strings(v, "type"),
        }),
        _ => None,
    };
    let items = match v.get("items") {
        Some(Value::Array(list)) => Some(ItemsItem {
            schema: list.iter().map(schema).collect(),
        }),
        Some(one @ Value::Object(_)) => Some(ItemsItem {
            schema: vec![schema(one)],
        }),
        _ => None,
    };
    let additional_properties = match v.get("additionalProperties") {
        Some(Value::Bool(b)) => Some(Box::new(AdditionalPropertiesItem {
            schema: None,
            boolean: Some(*b),
        })),
        Some(s @ Value::Object(_)) => Some(Box::new(AdditionalPropertiesItem {
            schema: Some(schema(s)),
            boolean: None,
        })),
        _ => None,
    };
    Schema {
        r#ref: text(v, "$ref"),
        format: text(v, "format"),
        title: text(v, "title"),
        description: text(v, "description"),
        default: v.get("default").map(any),
        multiple_of: num("multipleOf"),
        maximum: num("maximum"),
        exclusive_maximum: flag("exclusiveMaximum"),
        minimum: num("minimum"),
        exclusive_minimum: flag("exclusiveMinimum"),
        max_length: int("maxLength"),
        min_length: int("minLength"),
        pattern: text(v, "pattern"),
        max_items: int("maxItems"),
        min_items: int("minItems"),
        unique_items: flag("uniqueItems"),
        max_properties: int("maxProperties"),
        min_properties: int("minProperties"),
        required: strings(v, "required"),
        r#enum: v
            .get("enum")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(any).collect())
            .unwrap_or_default(),
        additional_properties,
        r#type,
        items,
        all_of: v
            .get("allOf")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(schema).collect())
            .unwrap_or_default(),
        properties: v
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| Properties {
                additional_properties: named_schemas(Some(p)),
            }),
        read_only: flag("readOnly"),
        vendor_extension: extensions(v),
    }
}

fn parameter(p: &Value) -> ParametersItem {
    let location = text(p, "in");
    let parameter = match location.as_str() {
        "body" => Parameter {
            body_parameter: Some(BodyParameter {
                description: text(p, "description"),
                name: text(p, "name"),
                r#in: location,
                required: p["required"].as_bool().unwrap_or_default(),
                schema: p.get("schema").map(schema),
            }),
            non_body_parameter: None,
        },
        "path" => Parameter {
            body_parameter: None,
            non_body_parameter: Some(NonBodyParameter {
                query_parameter_sub_schema: None,
                path_parameter_sub_schema: Some(PathParameterSubSchema {
                    required: p["required"].as_bool().unwrap_or_default(),
                    r#in: location,
                    description: text(p, "description"),
                    name: text(p, "name"),
                    r#type: text(p, "type"),
                    unique_items: p["uniqueItems"].as_bool().unwrap_or_default(),
                }),
            }),
        },
        _ => Parameter {
            body_parameter: None,
            non_body_parameter: Some(NonBodyParameter {
                query_parameter_sub_schema: Some(QueryParameterSubSchema {
                    required: p["required"].as_bool().unwrap_or_default(),
                    r#in: location,
                    description: text(p, "description"),
                    name: text(p, "name"),
                    r#type: text(p, "type"),
                    unique_items: p["uniqueItems"].as_bool().unwrap_or_default(),
                }),
                path_parameter_sub_schema: None,
            }),
        },
    };
    ParametersItem {
        parameter: Some(parameter),
    }
}

fn parameters(v: &Value) -> Vec<ParametersItem> {
    v.get("parameters")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(parameter).collect())
        .unwrap_or_default()
}

fn operation(op: &Value) -> Operation {
    let responses = op
        .get("responses")
        .and_then(Value::as_object)
        .map(|r| Responses {
            response_code: r
                .iter()
                .map(|(code, resp)| NamedResponseValue {
                    name: code.clone(),
                    value: Some(ResponseValue {
                        response: Some(Response {
                            description: text(resp, "description"),
                            schema: resp.get("schema").map(|s| SchemaItem {
                                schema: Some(schema(s)),
                            }),
                        }),
                    }),
                })
                .collect(),
        });
    Operation {
        tags: strings(op, "tags"),
        description: text(op, "description"),
        operation_id: text(op, "operationId"),
        produces: strings(op, "produces"),
        consumes: strings(op, "consumes"),
        parameters: parameters(op),
        responses,
        schemes: strings(op, "schemes"),
        vendor_extension: extensions(op),
    }
}

/// The protobuf encoding of a Swagger 2.0 document given as JSON.
pub(crate) fn encode(doc: &Value) -> Vec<u8> {
    let paths = doc["paths"].as_object().map(|paths| Paths {
        path: paths
            .iter()
            .map(|(name, item)| NamedPathItem {
                name: name.clone(),
                value: Some(PathItem {
                    get: item.get("get").map(operation),
                    put: item.get("put").map(operation),
                    post: item.get("post").map(operation),
                    delete: item.get("delete").map(operation),
                    patch: item.get("patch").map(operation),
                    parameters: parameters(item),
                }),
            })
            .collect(),
    });
    Document {
        swagger: text(doc, "swagger"),
        info: doc.get("info").map(|i| Info {
            title: text(i, "title"),
            version: text(i, "version"),
        }),
        consumes: strings(doc, "consumes"),
        produces: strings(doc, "produces"),
        paths,
        definitions: Some(Definitions {
            additional_properties: named_schemas(doc["definitions"].as_object()),
        }),
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_numbers_match_gnostic() {
        // Swagger "2.0" is field 1 (0x0a); Info is field 2 (0x12) with title 1 and version 2.
        let doc =
            json!({"swagger": "2.0", "info": {"title": "K", "version": "v"}, "definitions": {}});
        let bytes = encode(&doc);
        assert_eq!(
            bytes,
            [
                0x0a, 3, b'2', b'.', b'0', 0x12, 6, 0x0a, 1, b'K', 0x12, 1, b'v', 0x4a, 0
            ]
        );
        // A schema's `$ref` is field 1, `type` is TypeItem (22) and vendor extensions are 31.
        let s = schema(&json!({"$ref": "#/definitions/X"}));
        assert_eq!(s.encode_to_vec()[0], 0x0a);
        let s = schema(&json!({"type": "string", "x-a": {"b": 1}}));
        let bytes = s.encode_to_vec();
        assert_eq!(
            &bytes[..2],
            &[0xb2, 0x01],
            "type is field 22, length-delimited"
        );
        let ext = s.vendor_extension.first().unwrap();
        assert_eq!(ext.name, "x-a");
        assert_eq!(ext.value.as_ref().unwrap().yaml, r#"{"b":1}"#);
    }

    #[test]
    fn decodes_back() {
        let doc = json!({
            "swagger": "2.0",
            "paths": {"/api/v1/x": {"patch": {
                "parameters": [{"name": "fieldValidation", "in": "query", "type": "string"}],
                "responses": {"200": {"description": "OK", "schema": {"$ref": "#/definitions/A"}}},
                "x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": "A"}
            }}},
            "definitions": {"A": {"type": "object", "additionalProperties": {"type": "string"},
                                   "properties": {"b": {"type": "array", "items": {"type": "integer"}}}}}
        });
        let back = Document::decode(encode(&doc).as_slice()).unwrap();
        let path = &back.paths.unwrap().path[0];
        let patch = path.value.as_ref().unwrap().patch.as_ref().unwrap();
        let q = patch.parameters[0]
            .parameter
            .as_ref()
            .unwrap()
            .non_body_parameter
            .as_ref()
            .unwrap()
            .query_parameter_sub_schema
            .as_ref()
            .unwrap();
        assert_eq!(q.name, "fieldValidation");
        assert_eq!(
            patch.vendor_extension[0].name,
            "x-kubernetes-group-version-kind"
        );
        let a = &back.definitions.unwrap().additional_properties[0];
        let a = a.value.as_ref().unwrap();
        assert_eq!(a.r#type.as_ref().unwrap().value, ["object"]);
        let ap = a.additional_properties.as_ref().unwrap();
        assert_eq!(
            ap.schema.as_ref().unwrap().r#type.as_ref().unwrap().value,
            ["string"]
        );
        let b = &a.properties.as_ref().unwrap().additional_properties[0];
        assert_eq!(
            b.value
                .as_ref()
                .unwrap()
                .items
                .as_ref()
                .unwrap()
                .schema
                .len(),
            1
        );
    }
}
