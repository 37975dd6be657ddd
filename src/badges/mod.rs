//! Badge printers and check-in desks: device API keys, the attendee feed and its CSV and XLSX
//! exports, the print queue, printable badges as PDF and their template, signed QR codes,
//! check-in, and live numbers.

mod checkin;
mod export;
mod feed;
mod keys;
pub mod print;
mod printable;
pub mod qr;
mod render;
mod spreadsheet;
mod stats;
mod template;
mod xlsx;

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.configure(keys::routes)
        .configure(feed::routes)
        .configure(export::routes)
        .configure(print::routes)
        .configure(printable::routes)
        .configure(template::routes)
        .configure(qr::routes)
        .configure(checkin::routes)
        .configure(stats::routes);
}
