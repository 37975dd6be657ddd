DELETE FROM change_consumers WHERE name = 'webhooks';
DROP TABLE webhook_attempts;
DROP TABLE webhook_deliveries;
DROP TABLE webhook_endpoints;
