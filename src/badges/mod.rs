//! Badge printers and check-in desks: device API keys, the attendee feed and its CSV and XLSX exports, the
//! print queue, signed QR codes, check-in, and live numbers.

mod checkin;
mod export;
mod feed;
mod keys;
pub mod print;
pub mod qr;
mod spreadsheet;
mod stats;
mod xlsx;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.configure(keys::routes)
        .configure(feed::routes)
        .configure(export::routes)
        .configure(print::routes)
        .configure(qr::routes)
        .configure(checkin::routes)
        .configure(stats::routes);
}
