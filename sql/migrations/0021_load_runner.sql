-- Which runner owns a load: a runner whose lease lapsed and was taken over must not write another page,
-- fail the load or release the new owner's lease.
ALTER TABLE forcebridge.loads ADD COLUMN runner text;
