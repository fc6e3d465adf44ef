-- +goose Up
-- A product's custom topic classes (registry.TopicClass) as a JSON array,
-- in the order they are matched. New products are written with their
-- classes (the three defaults unless the request gives others). Products
-- made before classes existed let their devices use every /user/ topic
-- both ways; they keep doing so: the three defaults, then a catch-all '#'
-- (all), which an operator narrows or removes through the API.
ALTER TABLE products ADD COLUMN topic_classes TEXT NOT NULL DEFAULT '[]';
UPDATE products SET topic_classes = '[{"suffix":"#","operation":"all","description":"migrated: every user topic, both ways"}]';

-- +goose Down
ALTER TABLE products DROP COLUMN topic_classes;
