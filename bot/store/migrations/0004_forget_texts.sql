-- Issue 13 (items 5 and 6): a question's full text is kept only while it waits for its
-- answer; rows finished before this version still carried it.
UPDATE triggers SET payload = '{}' WHERE status != 'pending' AND payload != '{}';
-- `!oublie-moi` can no longer be turned off by a room's moderators.
DELETE FROM disabled_commands WHERE command = 'oublie-moi';
