-- Which drain holds a PENDING entry: a drain whose lease lapsed and was taken over must not record its
-- results over the new owner's (the lease is renewed while calls run; the token settles what is left).
ALTER TABLE forcebridge.change_log ADD COLUMN claim text;
