//! The route table: every HTTP route is registered through [`Routes`], which
//! builds the axum router and records `(method, path, access)` at the same
//! time. The auth gate ([`crate::auth::gate`]) decides from this table, and
//! a test walks it (`every_route_needs_credentials_except_the_public_set`),
//! so a route cannot be added without an access level, nor forgotten.
//!
//! Sets, as the contract for new routes says: [`Routes::public`] (no
//! credentials; add a route here only on purpose), [`Routes::by_method`]
//! (GET/HEAD → viewer, other methods → operator: almost everything), and
//! [`Routes::at_least`] (e.g. admin-only routes: tokens, sessions, reload).

use axum::{
    Router,
    handler::Handler,
    http::Method,
    routing::{MethodRouter, delete, get, patch, post, put},
};

use crate::{Controller, auth::Access};

/// One registered route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    /// Method (GET routes answer HEAD too).
    pub method: Method,
    /// Path as registered, with `{param}` placeholders.
    pub path: &'static str,
    /// What it needs.
    pub access: Access,
}

/// A set of routes with one access level, and the table of what it holds.
#[derive(Debug)]
pub struct Routes {
    router: Router<Controller>,
    table: Vec<RouteInfo>,
    access: Access,
}

impl Routes {
    fn with(access: Access) -> Routes {
        Routes {
            router: Router::new(),
            table: Vec::new(),
            access,
        }
    }

    /// Routes anyone may call: health, heartbeat pings, login, the opt-in
    /// public status page.
    pub fn public() -> Routes {
        Routes::with(Access::Public)
    }

    /// Routes whose role follows the method: GET/HEAD → viewer, others → operator.
    pub fn by_method() -> Routes {
        Routes::with(Access::ByMethod)
    }

    /// Routes that need at least `role` whatever the method.
    pub fn at_least(role: crate::auth::Role) -> Routes {
        Routes::with(Access::AtLeast(role))
    }

    fn add(mut self, method: Method, path: &'static str, mr: MethodRouter<Controller>) -> Routes {
        self.router = self.router.route(path, mr);
        self.table.push(RouteInfo {
            method,
            path,
            access: self.access,
        });
        self
    }

    /// `GET path`.
    pub fn get<H: Handler<T, Controller>, T: 'static>(self, path: &'static str, h: H) -> Routes {
        self.add(Method::GET, path, get(h))
    }

    /// `POST path`.
    pub fn post<H: Handler<T, Controller>, T: 'static>(self, path: &'static str, h: H) -> Routes {
        self.add(Method::POST, path, post(h))
    }

    /// `PUT path`.
    pub fn put<H: Handler<T, Controller>, T: 'static>(self, path: &'static str, h: H) -> Routes {
        self.add(Method::PUT, path, put(h))
    }

    /// `PATCH path`.
    pub fn patch<H: Handler<T, Controller>, T: 'static>(self, path: &'static str, h: H) -> Routes {
        self.add(Method::PATCH, path, patch(h))
    }

    /// `DELETE path`.
    pub fn delete<H: Handler<T, Controller>, T: 'static>(self, path: &'static str, h: H) -> Routes {
        self.add(Method::DELETE, path, delete(h))
    }

    /// Both sets in one (each route keeps its own access).
    pub fn merge(mut self, other: Routes) -> Routes {
        self.router = self.router.merge(other.router);
        self.table.extend(other.table);
        self
    }

    /// The router and the table.
    pub fn into_parts(self) -> (Router<Controller>, Vec<RouteInfo>) {
        (self.router, self.table)
    }

    /// The table.
    pub fn table(&self) -> &[RouteInfo] {
        &self.table
    }
}
