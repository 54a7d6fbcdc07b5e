//! The notes API, behind tenantdb-axum's tenant layer: each request names
//! its tenant (`X-Tenant`), the layer resolves it and checks the caller's
//! token, and handlers reach the tenant's own database through [`TenantDb`].
//!
//! - `GET /notes`: the tenant's notes, pinned first, then oldest first.
//! - `POST /notes` `{"title", "body", "pinned"?}`: `201` with the note.
//! - `GET /notes/{id}`: one note, or `404 not_found`.
//!
//! Errors have API.md's shape, `{"error": {"code", "message"}}`.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, NotSet, QueryFilter, QueryOrder, QuerySelect, Select, Set};
use serde::{Deserialize, Serialize};
use tenantdb_axum::{ApiError, Json, Path, TenantDb};

use crate::auth::Caller;
use crate::migrations::Schema;
use crate::note;

/// Longest title, in characters (the column's length).
const MAX_TITLE: usize = 200;

/// The notes routes, for the schema release this process plays; add the
/// tenant layer with `route_layer`.
pub fn router(schema: Schema) -> Router {
    Router::new()
        .route("/notes", get(list).post(create))
        .route("/notes/{id}", get(show))
        .with_state(schema)
}

/// A note as the API shows it. `pinned` is left out before migration 2.
#[derive(Debug, Serialize)]
struct NoteView {
    id: i32,
    author: String,
    title: String,
    body: String,
    created_at: chrono::DateTime<chrono::Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pinned: Option<bool>,
}

impl NoteView {
    fn new(note: note::Model, schema: Schema) -> Self {
        Self {
            pinned: schema.has_pinned().then_some(note.pinned),
            id: note.id,
            author: note.author,
            title: note.title,
            body: note.body,
            created_at: note.created_at,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewNote {
    title: String,
    #[serde(default)]
    body: String,
    pinned: Option<bool>,
}

#[derive(Debug, Serialize)]
struct NoteList {
    notes: Vec<NoteView>,
}

async fn list(State(schema): State<Schema>, db: TenantDb) -> Result<Json<NoteList>, ApiError> {
    let mut query = select(schema);
    if schema.has_pinned() {
        query = query.order_by_desc(note::Column::Pinned);
    }
    let notes = query.order_by_asc(note::Column::Id).all(&db.read).await?;
    let notes = notes.into_iter().map(|n| NoteView::new(n, schema)).collect();
    Ok(Json(NoteList { notes }))
}

async fn show(State(schema): State<Schema>, db: TenantDb, Path(id): Path<i32>) -> Result<Json<NoteView>, ApiError> {
    let note = select(schema)
        .filter(note::Column::Id.eq(id))
        .one(&db.read)
        .await?
        .ok_or_else(|| ApiError::not_found("note"))?;
    Ok(Json(NoteView::new(note, schema)))
}

async fn create(
    State(schema): State<Schema>,
    caller: Caller,
    db: TenantDb,
    Json(new): Json<NewNote>,
) -> Result<(StatusCode, Json<NoteView>), ApiError> {
    let title = new.title.trim();
    if title.is_empty() || title.chars().count() > MAX_TITLE {
        return Err(ApiError::invalid(format!("title must be 1 to {MAX_TITLE} characters")));
    }
    if new.pinned.is_some() && !schema.has_pinned() {
        return Err(ApiError::invalid("notes cannot be pinned before migration 2"));
    }
    let note = note::ActiveModel {
        id: NotSet,
        author: Set(caller.user),
        title: Set(title.to_owned()),
        body: Set(new.body),
        created_at: Set(chrono::Utc::now()),
        // Left to the column's default before migration 2 (and when unset).
        pinned: new.pinned.map_or(NotSet, Set),
    };
    let note = insert(note, schema, &db).await?;
    Ok((StatusCode::CREATED, Json(NoteView::new(note, schema))))
}

/// Notes with every column of `schema`; before migration 2 `pinned` is
/// read as `false`, so one model serves both releases.
fn select(schema: Schema) -> Select<note::Entity> {
    if schema.has_pinned() {
        return note::Entity::find();
    }
    use note::Column;
    note::Entity::find()
        .select_only()
        .columns([
            Column::Id,
            Column::Author,
            Column::Title,
            Column::Body,
            Column::CreatedAt,
        ])
        .expr_as(Expr::value(false), "pinned")
}

/// Inserts and reads the note back (with the columns of `schema`).
async fn insert(note: note::ActiveModel, schema: Schema, db: &TenantDb) -> Result<note::Model, ApiError> {
    let id = note::Entity::insert(note).exec(&db.write).await?.last_insert_id;
    let note = select(schema).filter(note::Column::Id.eq(id)).one(&db.write).await?;
    note.ok_or_else(|| ApiError::internal(&format!("note {id} not found right after its insert")))
}
