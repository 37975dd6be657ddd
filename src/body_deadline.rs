//! A deadline for reading a request's body.
//!
//! actix-web bounds the time a client has to send the request head
//! (`REGISTRAR_CLIENT_TIMEOUT_MS`), not the body: a client sending one byte every few seconds
//! would keep its connection, and the handler waiting for the body, forever. This middleware
//! gives the body `REGISTRAR_BODY_TIMEOUT_MS` from the moment the head arrived; a body that is
//! not complete by then ends with an error, and the request is answered `408 request_timeout`
//! whatever the handler made of that error, and the connection is closed (the rest of the body
//! is never read). actix-web has no such setting, hence this.

use std::cell::Cell;
use std::future::{Ready, ready};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::EitherBody;
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{Error, HttpMessage, ResponseError};
use futures_util::Stream;
use futures_util::future::LocalBoxFuture;
use tokio::time::{Instant, Sleep};

use crate::error::ApiError;

pub struct BodyDeadline {
    timeout: Duration,
}

impl BodyDeadline {
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }
}

impl<S, B> Transform<S, ServiceRequest> for BodyDeadline
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = BodyDeadlineMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(BodyDeadlineMiddleware {
            service,
            timeout: self.timeout,
        }))
    }
}

pub struct BodyDeadlineMiddleware<S> {
    service: S,
    timeout: Duration,
}

impl<S, B> Service<ServiceRequest> for BodyDeadlineMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        let expired = Rc::new(Cell::new(false));
        match req.take_payload() {
            // No body to wait for (most GETs): nothing to watch.
            Payload::None => {}
            payload => {
                let deadline = Instant::now() + self.timeout;
                req.set_payload(Payload::from(Box::pin(DeadlinePayload {
                    inner: payload,
                    deadline,
                    timer: Box::pin(tokio::time::sleep_until(deadline)),
                    expired: Rc::clone(&expired),
                })
                    as Pin<Box<dyn Stream<Item = _>>>));
            }
        }
        let response = self.service.call(req);
        Box::pin(async move {
            let response = response.await?;
            if !expired.get() {
                return Ok(response.map_into_left_body());
            }
            let (request, _) = response.into_parts();
            let mut answer = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "the request body did not arrive in time",
            )
            .error_response();
            answer
                .head_mut()
                .set_connection_type(actix_web::http::ConnectionType::Close);
            Ok(ServiceResponse::new(request, answer).map_into_right_body())
        })
    }
}

/// The request's body, ending with an error once the deadline has passed.
struct DeadlinePayload {
    inner: Payload,
    deadline: Instant,
    timer: Pin<Box<Sleep>>,
    expired: Rc<Cell<bool>>,
}

impl DeadlinePayload {
    fn expire(&self) -> Poll<Option<Result<Bytes, PayloadError>>> {
        self.expired.set(true);
        Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the request body did not arrive in time",
        )))))
    }
}

impl Stream for DeadlinePayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.expired.get() {
            return Poll::Ready(None);
        }
        if Instant::now() >= self.deadline {
            return self.expire();
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Pending => match self.timer.as_mut().poll(cx) {
                Poll::Ready(()) => self.expire(),
                Poll::Pending => Poll::Pending,
            },
            ready => ready,
        }
    }
}
