//! OpenAPI pieces for applications that document their routes with
//! `utoipa` (as the operator API does): the error shape every failure
//! answers with, the page query of every listing, and the passes that add
//! to a document what every route of a kind shares (the error responses,
//! the tenant header), so no route has to repeat them.
//!
//! ```
//! use tenantdb_axum::openapi;
//! use utoipa_axum::router::OpenApiRouter;
//!
//! let mut routes: OpenApiRouter<()> = OpenApiRouter::new(); // .routes(routes!(...))
//! openapi::tenant_api(routes.get_openapi_mut());
//! openapi::error_shape(routes.get_openapi_mut());
//! ```

use serde::Deserialize;
use utoipa::PartialSchema;
use utoipa::openapi::path::{Operation, Parameter, ParameterIn, PathItem};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, OpenApi, Ref, RefOr, Required, ResponseBuilder, Type, schema::ObjectBuilder,
};

pub use crate::error::{ErrorBody, ErrorDetail};
use crate::layer::TENANT_HEADER;

/// Every `error.code` this crate answers with, and its status.
pub const ERROR_CODES: &[(u16, &str)] = &[
    (400, "invalid_request"),
    (401, "unauthorized"),
    (403, "forbidden"),
    (403, "tenant_suspended"),
    (403, "tenant_deleted"),
    (404, "not_found"),
    (404, "tenant_not_found"),
    (405, "method_not_allowed"),
    (408, "timeout"),
    (409, "conflict"),
    (500, "internal"),
    (502, "provisioning_failed"),
    (503, "tenant_unavailable"),
    (503, "busy"),
];

/// The query of a listing (`?limit=&cursor=`), for `params(PageParams)`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size: 1 to 500, 50 when not given.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<uuid::Uuid>,
}

/// Gives every error response (status 4xx and 5xx) of `openapi` the error
/// shape ([`ErrorBody`], added to the components) unless it documents a
/// body of its own, and every 503 its `Retry-After` header. Run it last,
/// once every route is in.
pub fn error_shape(openapi: &mut OpenApi) {
    let components = openapi.components.get_or_insert_with(Default::default);
    components.schemas.insert("ErrorBody".to_owned(), ErrorBody::schema());
    components
        .schemas
        .insert("ErrorDetail".to_owned(), ErrorDetail::schema());
    for operation in operations(openapi) {
        for (status, response) in operation.responses.responses.iter_mut() {
            let RefOr::T(response) = response else { continue };
            // An error response that documents its own body keeps it.
            if !status.starts_with(['4', '5']) || !response.content.is_empty() {
                continue;
            }
            response.content.insert(
                "application/json".to_owned(),
                RefOr::T(
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                ),
            );
            if status == "503" {
                response.headers.insert(
                    "Retry-After".to_owned(),
                    RefOr::T(
                        HeaderBuilder::new()
                            .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
                            .description(Some("seconds to wait before trying again (1 to 30)"))
                            .build(),
                    ),
                );
            }
        }
    }
}

/// Adds each `(status, description)` to every operation of `openapi` that
/// does not list that status yet: the answers a layer or an extractor
/// gives on every route it guards.
pub fn add_responses(openapi: &mut OpenApi, responses: &[(u16, &str)]) {
    for operation in operations(openapi) {
        for (status, description) in responses {
            operation
                .responses
                .responses
                .entry(status.to_string())
                .or_insert_with(|| RefOr::T(ResponseBuilder::new().description(*description).build()));
        }
    }
}

/// Documents `openapi`'s routes as guarded by a [`TenantResolution`]
/// layer: each takes the `X-Tenant` header and may answer 401, 403, 404
/// and 503 before its handler runs.
///
/// [`TenantResolution`]: crate::TenantResolution
pub fn tenant_api(openapi: &mut OpenApi) {
    add_responses(
        openapi,
        &[
            (401, "unauthorized: no valid bearer token"),
            (403, "forbidden (not a user token), tenant_suspended or tenant_deleted"),
            (404, "tenant_not_found: no such tenant, or the caller is not a member"),
            (503, "tenant_unavailable (its database is not serving) or busy"),
            (500, "internal: logged, never detailed"),
        ],
    );
    for operation in operations(openapi) {
        let header = Parameter::builder()
            .name("X-Tenant")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "the tenant's slug or id; or the first label of a Host under the base domain (the header wins)",
            ))
            .schema(Some(String::schema()))
            .build();
        let parameters = operation.parameters.get_or_insert_with(Vec::new);
        let named = |p: &RefOr<Parameter>| matches!(p, RefOr::T(p) if p.name.eq_ignore_ascii_case(TENANT_HEADER));
        if !parameters.iter().any(named) {
            parameters.insert(0, RefOr::T(header));
        }
    }
}

/// Every operation of every path of `openapi`.
pub(crate) fn operations(openapi: &mut OpenApi) -> impl Iterator<Item = &mut Operation> {
    openapi.paths.paths.values_mut().flat_map(path_operations)
}

fn path_operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}
