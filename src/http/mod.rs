//! The actix-web application: FHIR routes, admin, health.

mod admin;
mod fhir_routes;
mod request_span;
mod response;

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};

use crate::config::Settings;
use crate::ledger::Ledger;
use crate::store::{AnyStore, Store, StoreError};

/// Shared state of the HTTP handlers.
pub struct AppState {
    pub ledger: Ledger,
    pub max_body_bytes: usize,
    pub public_base_url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// A bound, not yet running server (zero2prod's `Application`): tests bind
/// port 0 and read the port back.
pub struct Application {
    port: u16,
    server: Server,
    ledger: Ledger,
}

impl Application {
    pub async fn build(settings: &Settings) -> Result<Self, StartError> {
        let store =
            AnyStore::connect(&settings.database_url, settings.database_role.as_deref()).await?;
        if settings.migrate_on_start {
            store.migrate().await?;
        }
        let ledger = Ledger::start(store, settings.writer);
        let listener =
            TcpListener::bind(settings.http_addr).map_err(|source| StartError::Bind {
                addr: settings.http_addr,
                source,
            })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                addr: settings.http_addr,
                source,
            })?
            .port();
        let state = web::Data::new(AppState {
            ledger: ledger.clone(),
            max_body_bytes: settings.max_body_bytes,
            public_base_url: settings.public_base_url.clone(),
        });
        let server = HttpServer::new(move || {
            App::new()
                .wrap(tracing_actix_web::TracingLogger::<request_span::PhiFreeSpan>::new())
                .app_data(state.clone())
                .configure(fhir_routes::configure)
                .configure(admin::configure)
        })
        .listen(listener)
        .map_err(|source| StartError::Bind {
            addr: settings.http_addr,
            source,
        })?
        .run();
        Ok(Application {
            port,
            server,
            ledger,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Serves until SIGTERM/SIGINT (graceful: in-flight requests finish, so
    /// every acknowledged append has committed).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Application { server, ledger, .. } = self;
        drop(ledger);
        server.await
    }
}
