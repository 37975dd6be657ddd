//! Badge printers and check-in desks: device API keys, the attendee feed and export, the
//! print queue, signed QR codes, check-in, and live numbers.

mod checkin;
mod feed;
mod keys;
pub mod print;
pub mod qr;
mod spreadsheet;
mod stats;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.configure(keys::routes)
        .configure(feed::routes)
        .configure(print::routes)
        .configure(qr::routes)
        .configure(checkin::routes)
        .configure(stats::routes);
}
