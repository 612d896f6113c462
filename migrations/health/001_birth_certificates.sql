-- Health commission: birth medical certificates (出生医学证明) issued by hospitals.
-- Habits: gender written as '男' / '女', the birth moment as a timestamp with zone,
-- parents identified by name and ID number (often missing for the father: '' or NULL),
-- home addresses written by hand, with or without '广东省深圳市'.

CREATE TABLE cszm (                       -- 出生医学证明
    cszmbh    varchar(12) PRIMARY KEY,      -- 出生医学证明编号 e.g. Q440123456
    xsexm     varchar(50),                  -- 新生儿姓名 (may be empty at issue time)
    xsexb     varchar(2),                   -- 新生儿性别 男 / 女
    cssj      timestamptz NOT NULL,         -- 出生时间
    csyz      smallint,                     -- 出生孕周
    cstz      integer,                      -- 出生体重 (g)
    jsjg      varchar(100),                 -- 接生机构
    mqxm      varchar(50),                  -- 母亲姓名
    mqsfzh    varchar(24),                  -- 母亲身份证号
    fqxm      varchar(50),                  -- 父亲姓名
    fqsfzh    varchar(24),                  -- 父亲身份证号
    jtzz      varchar(200),                 -- 家庭住址
    qfrq      timestamp,                    -- 签发日期
    gxsj      timestamp NOT NULL DEFAULT localtimestamp(0)
);
ALTER TABLE cszm REPLICA IDENTITY FULL;
