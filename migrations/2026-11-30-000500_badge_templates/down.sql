DROP TABLE badge_templates;
